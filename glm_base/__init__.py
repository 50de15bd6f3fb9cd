"""glm_base: the GLM model (GLM-1 and GLM-4 variants), tokenizer, blank-infilling pretraining.

Importing this package registers ``GLMConfig`` with transformers' ``AutoConfig`` (model type
``glm_base``), ``GLMModel`` with ``AutoModel`` and ``GLMForCausalLM`` with ``AutoModelForCausalLM``.
"""

from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

from .configuration import MODEL_SIZES, GLMConfig, config_for_size
from .modeling import GLMForCausalLM, GLMModel

AutoConfig.register("glm_base", GLMConfig, exist_ok=True)
AutoModel.register(GLMConfig, GLMModel, exist_ok=True)
AutoModelForCausalLM.register(GLMConfig, GLMForCausalLM, exist_ok=True)

__all__ = ["GLMConfig", "GLMForCausalLM", "GLMModel", "MODEL_SIZES", "config_for_size"]
