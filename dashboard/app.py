"""Streamlit entry point of the dashboard: ``bench dashboard`` runs ``streamlit run`` on it.

It sets the page up, opens the database, draws the sidebar's sweep picker (here, so the
choice persists across pages) and hands over to the page chosen in the navigation. Run it
directly with ``streamlit run dashboard/app.py -- --db URL`` when developing.
"""

from __future__ import annotations

import sys
from pathlib import Path

# The app's modules are imported as the ``dashboard`` package, found next to this folder.
_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import streamlit as st  # noqa: E402

from dashboard import data, state, ui  # noqa: E402

#: (file under views/, title, Material icon, URL path) in navigation order.
PAGES: tuple[tuple[str, str, str, str], ...] = (
    ("sweeps.py", "Sweeps", ":material/table_rows:", "sweeps"),
    ("convergence.py", "Convergence", ":material/show_chart:", "convergence"),
    ("leaderboard.py", "Leaderboard", ":material/leaderboard:", "leaderboard"),
    ("tuning.py", "Tuning", ":material/tune:", "tuning"),
    ("trial.py", "Trial", ":material/description:", "trial"),
)


def main() -> None:
    st.set_page_config(page_title="bench dashboard", page_icon=":material/monitoring:",
                       layout="wide")
    pages = [
        st.Page(f"views/{file}", title=title, icon=icon, url_path=path, default=i == 0)
        for i, (file, title, icon, path) in enumerate(PAGES)
    ]
    nav = st.navigation(pages)
    ui.reset_chart_data()
    state.setup(data.db_url())
    nav.run()


main()
