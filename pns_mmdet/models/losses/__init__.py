from .prompt_mask_loss import PromptMaskLoss

__all__ = ['PromptMaskLoss']
