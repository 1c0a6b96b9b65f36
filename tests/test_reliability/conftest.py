"""Adds the corrupted-input campaign table to pytest's terminal summary."""


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    table = getattr(config, 'pns_campaign_table', None)
    if table:
        terminalreporter.section('corrupted-input campaign')
        terminalreporter.write_line(table)
