from .nucleus_prompter import NucleusPrompter
from .prompt_nuc_seg import PromptNucSeg
from .sam_prompt_segmentor import SAMPromptSegmentor

__all__ = ['NucleusPrompter', 'SAMPromptSegmentor', 'PromptNucSeg']
