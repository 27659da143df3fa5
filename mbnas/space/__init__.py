"""Search spaces: the families of architectures a search picks from (files in search_spaces/)."""

from mbnas.space.model import OpChoice, SearchSpace, StageChoices, probe_block
from mbnas.space.reader import available_spaces, default_op_name, load_space, space_from_dict

__all__ = ["OpChoice", "SearchSpace", "StageChoices", "available_spaces", "default_op_name",
           "load_space", "probe_block", "space_from_dict"]
