"""Import this before transformers: it keeps transformers from importing scikit-learn.

transformers imports scikit-learn (and with it pandas, narwhals and scipy.sparse) only for
assisted generation's confidence threshold (`generation/candidate_generator.py`: roc_curve),
which anygpt never uses; that is about a third of `from transformers import LlamaForCausalLM`
(measured with `python -X importtime`, docs/generation.md). anygpt's own scikit-learn uses
(eval probes) import it themselves and are unaffected. Without the flag (another transformers
version) this does nothing.
"""

import transformers.utils.import_utils as _import_utils

if hasattr(_import_utils, "_sklearn_available"):
    _import_utils._sklearn_available = False
