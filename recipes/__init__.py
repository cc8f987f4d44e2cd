"""One command per paper result: `python -m recipes list`, `python -m recipes run NAME --model M --data NAME=DIR`.
Each recipe (recipes.catalog) chains our capture, analysis and intervention calls with the paper's settings and
writes its figures and a table of our number beside the paper's."""
