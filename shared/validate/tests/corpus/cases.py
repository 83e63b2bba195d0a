"""Every corpus case."""
from cases_js import CASES as JS
from cases_py import CASES as PY
from cases_rs import CASES as RS

CASES = PY + JS + RS
