"""grokspec inside other training frameworks (SPEC §6).

- :mod:`grokspec.integrations.transformers`: ``GrokspecCallback``, a
  Hugging Face ``TrainerCallback`` (needs ``grokspec[transformers]``);
- :mod:`grokspec.integrations.lightning`: ``GrokspecCallback``, a Lightning
  ``Callback`` (needs ``grokspec[lightning]``).

Each is imported only on request: ``import grokspec`` never imports torch,
transformers or lightning. Both are thin layers over
:class:`grokspec.monitor.EntropyMonitor`.
"""
