"""The state file and what lives beside it: the SQLite store with typed rows and named
migrations (`store`, `migrations`), files written safely (`files`), the one-pass-at-a-time lock
(`lock`), the online backup (`backup`) and this installation's id (`installation`). SQL lives
only here."""
