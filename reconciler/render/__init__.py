"""Values -> text, JSON and Markdown for people and machines. Decides nothing, changes nothing."""
