from .nucleus_prompter import NucleusPrompter

__all__ = ['NucleusPrompter']
