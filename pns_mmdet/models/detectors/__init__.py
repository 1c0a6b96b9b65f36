from .nucleus_prompter import NucleusPrompter
from .sam_prompt_segmentor import SAMPromptSegmentor

__all__ = ['NucleusPrompter', 'SAMPromptSegmentor']
