"""The embedded default bridge: knowledge files (data) applied by one engine. See engine.py and knowledge.py."""

from bridge.rules.engine import EmptyPromptError, RulesTranslator
from bridge.rules.knowledge import KnowledgeBase, KnowledgeError
from bridge.rules.stages import target_size

__all__ = ["EmptyPromptError", "KnowledgeBase", "KnowledgeError", "RulesTranslator", "target_size"]
