"""The dashboard's pages: Streamlit scripts that ``app.py`` runs through ``st.navigation``.

Each module draws its page when it runs (Streamlit executes the file), so importing one
outside a Streamlit run is not meaningful; they live in the package so that a wheel ships them.
"""
