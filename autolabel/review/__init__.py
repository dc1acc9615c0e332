"""Review web app: a keyboard-first uncertainty queue for several reviewers at once.

``queue`` holds the claim/lease/decide/undo semantics, ``app`` the FastAPI routes and the
server runner, ``static/`` the page (plain HTML/JS/CSS, no build step).
"""
