"""prompt-bridge: migrate text-to-image prompts across model generations."""
