"""Running unattended: structured logs (`logs`), the Prometheus textfile and push (`metrics`), the
daemon's scheduler (`scheduler`) and stop-between-records signal handling (`signals`)."""
