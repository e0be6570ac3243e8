"""Model cards for ScratchLM runs (`scratchlm.model_cards`), rendered from the run record with `huggingface_hub`."""

from .card import (
    MODEL_CARD_FILE,
    TEMPLATE_PATH,
    card_data_from_record,
    eval_results_from_record,
    record_has_results,
    render_model_card,
    validate_model_card,
    write_model_card,
)
from .run_record import RunRecord

__all__ = [
    "MODEL_CARD_FILE",
    "RunRecord",
    "TEMPLATE_PATH",
    "card_data_from_record",
    "eval_results_from_record",
    "record_has_results",
    "render_model_card",
    "validate_model_card",
    "write_model_card",
]
