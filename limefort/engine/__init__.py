"""One pass, from reading to recording: `sync` runs it (gather → plan → execute → reconcile);
`gather` reads Lime Go page by page with read-ahead (`prefetch`); `execute` carries out the
planner's actions with a few writes in flight (`inflight`), recording intents and outcomes in plan
order; `ledger` indexes what Fortnox holds; `reconcile` settles writes whose answer was lost;
`writers` keeps one writer per tenant; `passstate` is what the parts of a pass share; `runner`
wires a pass to the lock, store, clients and metrics; `token_binding` ties cached tokens to the
credentials that got them."""
