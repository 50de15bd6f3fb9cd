"""glm_base: the GLM model (GLM-1 and GLM-4 variants), tokenizer, blank-infilling pretraining.

Importing this package registers ``GLMConfig`` with transformers' ``AutoConfig`` (model type
``glm_base``), ``GLMModel`` with ``AutoModel``, ``GLMForCausalLM`` with ``AutoModelForCausalLM`` and
``GLMForSequenceClassification`` with ``AutoModelForSequenceClassification``.
"""

from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoModelForSequenceClassification

from .configuration import MODEL_SIZES, GLMConfig, config_for_size
from .modeling import GLMForCausalLM, GLMForSequenceClassification, GLMModel

AutoConfig.register("glm_base", GLMConfig, exist_ok=True)
AutoModel.register(GLMConfig, GLMModel, exist_ok=True)
AutoModelForCausalLM.register(GLMConfig, GLMForCausalLM, exist_ok=True)
AutoModelForSequenceClassification.register(GLMConfig, GLMForSequenceClassification, exist_ok=True)

__all__ = ["GLMConfig", "GLMForCausalLM", "GLMForSequenceClassification", "GLMModel", "MODEL_SIZES", "config_for_size"]
