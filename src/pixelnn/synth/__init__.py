"""Stage 2: candidates composed from exemplars, their ranking and control; `Request` (request.py)
says what one synthesis is asked for."""

LIKE_K = 25  # how many exemplars nearest an example photo a 'looks like this' restriction keeps, by default
