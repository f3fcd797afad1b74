"""The vocabulary every layer shares, with no I/O: the typed records (`models`), the keys that
name a record across both services (`keys`), limefort's errors and exit codes (`errors`), Fortnox's
error codes in plain words (`explain`), what may be shown of personal data (`privacy`) and the one
rule for which host a URL names (`urls`), and the table of what Fortnox accepts in each field (`limits`, data the sandbox reads
too). Imports nothing else of limefort."""
