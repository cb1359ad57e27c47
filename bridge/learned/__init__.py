"""The learned bridge: a seq2seq model (T5 + LoRA) that rewrites prompts, with protected syntax carried through as
placeholders; on transformers, or on CTranslate2 (fast.py: no torch). Heavy imports (torch, transformers, peft,
ctranslate2, tokenizers) only inside functions."""
