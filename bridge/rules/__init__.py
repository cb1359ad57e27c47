"""The embedded default bridge: knowledge files (data) applied by one engine. See engine.py and knowledge.py."""

from bridge.rules.engine import EmptyPromptError, RulesTranslator, target_size
from bridge.rules.knowledge import KnowledgeBase, KnowledgeError

__all__ = ["EmptyPromptError", "KnowledgeBase", "KnowledgeError", "RulesTranslator", "target_size"]
