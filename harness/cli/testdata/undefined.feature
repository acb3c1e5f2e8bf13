Feature: a step nobody defined
  Scenario: undefined steps fail in strict mode
    Given a step that no library defines
