"""The learned bridge: a seq2seq model (T5 + LoRA) that rewrites prompts, with protected syntax carried through as
placeholders. Heavy imports (torch, transformers, peft) only inside functions."""
