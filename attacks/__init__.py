"""Built-in attacks: exit estimation, strategy stealing, function-only baselines."""
