"""Moved to :mod:`bridge.learned.seq2seq`; this documented path (``bridge.seq2seq.Seq2SeqTranslator``) still works."""


def __getattr__(name: str):
    import bridge.learned.seq2seq as moved

    return getattr(moved, name)
