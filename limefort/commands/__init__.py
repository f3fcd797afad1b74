"""The commands whose work is more than wiring, one module each: `audit`, `check`, `init`, `demo`,
`fleet` (status of many tenants), `auth` (Fortnox consent) and the terminal `progress` of a pass.
`limefort.cli` parses arguments and calls into these; nothing here imports the CLI."""
