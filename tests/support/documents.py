"""The four quarterly reports that the recorded file_search flows searched, with their
attributes: shared by the replay tests and the file_search tool tests."""

REPORTS = {
    "us_marketing_q1.txt": (
        "US promotional campaigns for Q1 2023. Revenue increased by 15% in the US region.",
        {"region": "us", "category": "marketing", "date": 1672531200.0},
    ),
    "us_engineering_q2.txt": (
        "US technical updates for Q2 2023. New features deployed in the US region.",
        {"region": "us", "category": "engineering", "date": 1680307200.0},
    ),
    "eu_marketing_q1.txt": (
        "European advertising campaign results for Q1 2023. Strong growth in EU markets.",
        {"region": "eu", "category": "marketing", "date": 1672531200.0},
    ),
    "asia_sales_q3.txt": (
        "Asia Pacific revenue figures for Q3 2023. Record breaking quarter in Asia.",
        {"region": "asia", "category": "sales", "date": 1688169600.0},
    ),
}
