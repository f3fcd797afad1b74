"""What the ledger means to a bookkeeper, as pure rules over data read elsewhere: which invoices
are paid, unpaid or overdue (`payments`, for `audit` and the metrics) and whether the company's
Fortnox settings can book what a pass sends (`booking`, for `check`). No I/O: the callers read."""
