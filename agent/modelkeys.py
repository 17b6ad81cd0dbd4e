"""The agent's own GGUF metadata keys: written by the toolchain, read by the runtime."""

PREFIX = "vehicle_agent."
FUNCTION_MAP = PREFIX + "function_map"        # JSON {"<MB_k>": function or null}
REGISTRY_SHA = PREFIX + "registry_sha256"
BASE_SHA = PREFIX + "base_model_sha256"
BASE_BLOCKS = PREFIX + "base_block_count"
REMOVED = PREFIX + "removed_blocks"           # JSON list of base block indices
RECIPE = PREFIX + "recipe"                    # JSON of the recipe
TEMPLATES_SHA = PREFIX + "templates_sha256"   # the phrase templates it was trained on
PROMPT_LEADING_SPACE = PREFIX + "prompt_leading_space"  # bool: the prompt is " " + sentence (absent: false)


def prompt_leading_space(metadata: dict[str, str]) -> bool:
    """Whether a model's prompts are " " + sentence; a model from before the key wrote none."""
    return metadata.get(PROMPT_LEADING_SPACE, "false").lower() in ("true", "1")
