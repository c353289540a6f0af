"""One way to ask a model for text, three places to get it from.

Three stages of the series generate text: synthetic negatives (notebook 02), teacher reasoning
traces (03) and the judge's verdicts (05). They should not care *where* the text comes from, so
every one of them builds a list of :class:`GenRequest` and hands it to a :class:`Backend`:

* :class:`TransformersBackend`: a model loaded in this process (batched, left padding), the
  default on a laptop or a Colab GPU;
* :class:`OpenAIBackend`: any OpenAI-compatible ``/v1/chat/completions`` server (vLLM, llama.cpp
  server, Ollama, hosted APIs), with concurrency, timeouts and retries, the key read from the
  environment only;
* :class:`OfflineBackend`: no model at all, deterministic text for the smoke profile (mechanics
  only: its text means nothing).

Results come back as :class:`GenResult` in request order. Backends do not cache: wrap one in
:class:`persrm_utils.generation.cache.CachedGenerator` to make a long run resumable.

Heavy imports (torch, transformers, httpx, tenacity) happen inside the backend that needs them, so
importing this module costs nothing and the offline path runs without any of them.
"""

from persrm_utils.generation.cache import CachedGenerator
from persrm_utils.generation.local import TransformersBackend
from persrm_utils.generation.requests import GenRequest

__all__ = ["CachedGenerator", "GenRequest", "TransformersBackend"]
