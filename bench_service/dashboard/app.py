"""Streamlit entry point of the dashboard: ``bench dashboard`` runs ``streamlit run`` on it.

It sets the page up, checks the access token (when the dashboard was started with one),
opens the database, draws the sidebar's sweep picker (here, so the choice persists across
pages) and hands over to the page chosen in the navigation. Run it directly with
``streamlit run bench_service/dashboard/app.py -- --db URL`` when developing.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

# Installed (wheel or editable), ``bench_service`` imports from anywhere; run straight from a
# checkout that is not installed, the package is found three folders up.
if importlib.util.find_spec("bench_service") is None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import streamlit as st

from bench_service.dashboard import auth, data, state, ui

#: (file under views/, title, Material icon, URL path) in navigation order.
PAGES: tuple[tuple[str, str, str, str], ...] = (
    ("sweeps.py", "Sweeps", ":material/table_rows:", "sweeps"),
    ("convergence.py", "Convergence", ":material/show_chart:", "convergence"),
    ("leaderboard.py", "Leaderboard", ":material/leaderboard:", "leaderboard"),
    ("tuning.py", "Tuning", ":material/tune:", "tuning"),
    ("analysis.py", "Analysis", ":material/analytics:", "analysis"),
    ("trial.py", "Trial", ":material/description:", "trial"),
)


def main() -> None:
    st.set_page_config(page_title="bench dashboard", page_icon=":material/monitoring:",
                       layout="wide")
    auth.require_token()  # before anything reads the database
    pages = [
        st.Page(f"views/{file}", title=title, icon=icon, url_path=path, default=i == 0)
        for i, (file, title, icon, path) in enumerate(PAGES)
    ]
    nav = st.navigation(pages)
    ui.reset_chart_data()
    state.setup(data.db_url())
    nav.run()


main()
