"""Package data: ships this folder inside the installed mbnas as mbnas.conf."""
