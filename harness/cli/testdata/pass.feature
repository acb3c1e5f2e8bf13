Feature: a passing run
  Scenario: a user that is not a plain identifier is refused
    Given a window 5 for user "x;y" on board "refpayload" lasting 1s
    When the window runs to the end
    Then the window is aborted because "is not a plain identifier"
