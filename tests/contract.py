"""The contract workflow of the core issue, kept exactly as written there (long lines and all);
shared by the tests of several layers."""

CONTRACT = """\
name: contract-example
agents:
  - name: fast-coder
    capabilities: {python: 0.9, testing: 0.4}
    concurrency: 2
    runner: {type: command, argv: ["python3", "-c", "import sys,time; time.sleep(float(sys.argv[1])); print('done', sys.argv[2])", "{prompt}", "{task_id}"]}
  - name: careful-tester
    capabilities: {testing: 0.9}
    concurrency: 1
    runner: {type: command, argv: ["python3", "-c", "import sys,time; time.sleep(float(sys.argv[1])); print('tested')", "{prompt}"]}
tasks:
  - {id: api, capability: python, prompt: "0.5"}
  - {id: db, capability: python, prompt: "0.5"}
  - {id: tests, capability: testing, prompt: "0.3", depends_on: [api, db]}
"""
