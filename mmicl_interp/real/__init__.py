"""Real Hugging Face models: the small-model measures, knockouts and patching on LMs and VLMs.

- :mod:`~mmicl_interp.real.load`: load a model by hub name or local folder through
  TransformerLens's ``TransformerBridge`` (eager attention), vision-language models first
  through :mod:`mmicl_interp.real.vlm` (the ``vlm`` extra);
- :mod:`~mmicl_interp.real.text`: few-shot text prompts (built-in tasks or a user file) as
  :class:`~mmicl_interp.prompts.ICLPrompts`;
- :mod:`~mmicl_interp.real.heads`: per-layer/head scores and label accuracy in one pass;
- :mod:`~mmicl_interp.real.knockout`: top-k head knockouts against random heads, and head
  patching with label-corrupted prompts;
- :mod:`~mmicl_interp.real.report`: the offline ``report.html``.

Submodules are imported on use (they pull in torch and transformers).
"""
