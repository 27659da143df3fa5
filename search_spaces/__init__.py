"""Package data: ships this folder inside the installed mbnas as mbnas.search_spaces."""
