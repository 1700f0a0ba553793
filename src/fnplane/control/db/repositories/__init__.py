"""Database access, one repository per aggregate (the only place besides db/ that speaks SQL)."""
