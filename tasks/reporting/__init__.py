"""The round report as a person looks at it: one offline HTML page of figures (`page.write_report`)."""
