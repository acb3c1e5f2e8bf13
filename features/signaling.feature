@sim
Feature: Signaling a payload through one window
  The bus powers the payload on, uplinks files to its inbox, places the
  window config, signals configure (synchronous, 15 s) and start
  (asynchronous), and at the window's end sweeps /outbox, shuts the payload
  down, cuts power and delivers every swept file to S3 byte for byte.

  Background:
    Given a window 1001 for user "alice" on board "refpayload" lasting 2s

  Scenario: A file the user command writes lands in S3 byte for byte
    Given the window's user command is "/usr/bin/mkfile /outbox/capture.bin 3MiB 7"
    When the window runs to the end
    Then the window is delivered
    And "capture.bin" lands in the bucket under the outbox layout with the bytes of mkfile 3MiB seed 7

  Scenario: The window config on the payload holds the tasking parameters
    Given the window's tasking parameters are:
      """
      {"gain_db": 42, "band": "S", "targets": ["a", "b"], "adcs_config": {"mode": "nadir"}}
      """
    And the window's user command is "/usr/bin/sleep 1h"
    And the window lasts 1m
    When the window reaches "started"
    Then the payload file "/signaling/window_configs/1001.json" is a version 1 window config with the window's tasking parameters

  Scenario: An uplinked file is in the inbox before configure
    Given the file "plan.txt" containing "point at 47.6N 122.3W" is uplinked for the window
    And the window lasts 1m
    When the window reaches "started"
    Then the payload file "/signaling/inbox/alice/plan.txt" contains "point at 47.6N 122.3W"
    And the bus placed "/signaling/inbox/alice/plan.txt" before it signalled configure

  Scenario: Configure that exits non-zero aborts the window and nothing is started
    Given the window's configure command is "/usr/bin/exit 3 calibration table missing"
    When the window runs to the end
    Then the window is aborted because "configure exited 3: calibration table missing"
    And no start signal was sent
    And the payload is powered off

  @slow
  Scenario: Configure that runs past 15 s aborts the window
    Given the window's configure command is "/usr/bin/sleep 1h"
    When the window runs to the end
    Then the window is aborted because "configure did not return within 15s"
    And no start signal was sent
    And the payload is powered off

  Scenario: The start signal returns at once while payload_exec runs on
    Given the window's user command is "/usr/bin/sleep 1h"
    When the window reaches "started"
    Then payload_exec is still running the window on the payload
    When the window runs to the end
    Then the window is delivered

  Scenario Outline: A window id or user that is not a plain identifier is refused before anything is sent
    Given the window's <field> is "<value>"
    When the window runs to the end
    Then the window is aborted because "is not a plain identifier"
    And nothing was sent to the payload

    Examples:
      | field | value           |
      | user  | alice; reboot   |
      | user  | ../../etc       |
      | user  | -e              |
      | user  |                 |
      | user  | al ice          |
      | id    | 42; halt        |
      | id    | $(id)           |
      | id    | 1 2             |
      | id    | -u              |

  Scenario: A payload presenting the wrong host key is refused
    Given the payload serves a host key other than the one the board pins
    When the window runs to the end
    Then the window is aborted because "host key mismatch"
    And nothing was placed on the payload
    And the payload is powered off
