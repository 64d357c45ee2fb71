"""Built-in defenses against output-strategy stealing."""
