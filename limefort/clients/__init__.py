"""The two services, over HTTP and nothing else: one transport with the retries, the rate limit
and the redaction in one place (`http`), token records (`tokens`), and a client per service
(`limego` reads, `fortnox` reads and writes). The clients know nothing of the state file or the
planner; the engine hands them what to send."""
