@sim @power @relay
Feature: Payload power through relay boards
  On a bench each payload's power goes through a channel of a USB/serial
  relay board. The bus switches it with the real driver (go.bug.st/serial)
  and checks that the payload really came up. Here the relay boards are
  simulators on pseudo-terminals that answer byte for byte as the boards
  do (fixtures/relaysim); on the sim bench a simulated relay is wired to
  the reference payload process: relay on starts it, relay off kills it.

  Scenario Outline: The payload answers once its <protocol> relay switches it on
    Given a window <window> for user "alice" on board "refpayload" lasting 2s
    And board "refpayload" is powered through a simulated <protocol> relay on channel <channel>
    When the window runs to the end
    Then the window is delivered
    And the relay of "refpayload" received <on> and later <off>
    And the payload is powered off

    Examples:
      | protocol  | window | channel | on            | off           |
      | lcus      | 5001   | 1       | A0 01 01 A2   | A0 01 00 A1   |
      | numato    | 5002   | 0       | "relay on 0\r" | "relay off 0\r" |
      | kmtronic  | 5003   | 1       | FF 01 01      | FF 01 00      |
      | denkovi   | 5004   | 1       | "01+//"       | "01-//"       |
      | devantech | 5005   | 1       | 65            | 6F            |

  Scenario: The app switches another payload off and on with PayloadPowerControl
    Given a second payload "camera" with hw_id 2, powered through a simulated devantech relay on channel 2
    And a window 5010 for user "alice" on board "refpayload" lasting 60s
    When the window reaches "started"
    And the app switches hw_id 2 on
    Then payload "camera" answers SSH within 10s
    When the app switches hw_id 2 off
    Then payload "camera" is off, and its relay is open
    When the app switches hw_id 2 on
    Then payload "camera" answers SSH within 10s
    And the relay of "camera" received 70 and later 66

  Scenario: Unplugging the relay board mid-window aborts the window with the reason
    Given board "refpayload" is powered through a simulated numato relay on channel 0
    And a window 5011 for user "alice" on board "refpayload" lasting 60s
    When the window reaches "started"
    And the relay board of "refpayload" is unplugged
    Then the window is aborted because "payload power lost mid-window"
    And the window is aborted because "unplugged?"

  Scenario: Two runs switching one relay board at once take turns on its port
    Given a simulated numato relay board, answering after 300ms
    And board "pump" is on its relay 1
    And board "heater" is on its relay 2
    When "hil power cycle pump" and "hil power cycle heater" run at the same time
    Then both succeed, one waiting for the port while the other held it
    # Each cycle: off and its read-back, on and its read-back, then the
    # state hil power prints: 5 commands (each after a bare CR, the
    # driver's resync, which is not a command).
    And every frame reached the relay board whole, 10 in all

  Scenario: A run that finds the relay port held for too long says who holds it
    Given a simulated kmtronic relay board, answering after 700ms
    And board "pump" is on its relay 1
    And board "heater" is on its relay 2
    When "hil power status pump --wait 100ms" and "hil power status heater --wait 100ms" run at the same time
    Then one of them fails with exit status 1, saying "is in use by pid" and naming the other's board

  Scenario Outline: hil power sends a <protocol> board exactly the contract's bytes
    Given a simulated <protocol> relay board
    And board "pump" is on its relay <channel>
    When I run "hil power on pump"
    Then it succeeds, printing "pump: on"
    And the relay board received exactly <on>
    When I run "hil power status pump"
    Then it succeeds, printing "pump: <status>"
    And the relay board received exactly <read>
    When I run "hil power off pump"
    Then it succeeds, printing "pump: off"
    And the relay board received exactly <off>

    # on and off: the switch, its read-back, then the state hil power
    # prints; status: one read-back. An LCUS board has none; a Devantech
    # read-back asks the module id first (5A), so that another board's
    # echo is never taken for a relay state.
    Examples:
      | protocol  | channel | on                                          | status  | read                | off                                          |
      | lcus      | 2       | A0 02 01 A3                                 | unknown | ""                  | A0 02 00 A2                                  |
      | numato    | 3       | "\rrelay on 3\r\rrelay read 3\r\rrelay read 3\r" | on | "\rrelay read 3\r" | "\rrelay off 3\r\rrelay read 3\r\rrelay read 3\r" |
      | kmtronic  | 2       | FF 02 01 FF 09 00 FF 09 00                  | on      | FF 09 00            | FF 02 00 FF 09 00 FF 09 00                   |
      | denkovi   | 5       | "05+//ask//ask//"                           | on      | "ask//"             | "05-//ask//ask//"                            |
      | devantech | 2       | 66 5A 5B 5A 5B                              | on      | 5A 5B               | 70 5A 5B 5A 5B                               |

  Scenario Outline: hil power says what is wrong: <case>
    Given a simulated kmtronic relay board
    And board "pump" is on its relay <channel>
    And <setup>
    When I run "hil power <command>"
    Then it fails with exit status <status>, saying "<message>"

    Examples:
      | case                    | channel | setup                                          | command        | status | message |
      | an unknown board        | 1       | nothing else is wrong                          | on nosuch      | 2      | has no board "nosuch"; its boards: [pump] |
      | a channel out of range  | 9       | nothing else is wrong                          | on pump        | 2      | power.relay.channel: channel 9 is out of range |
      | a missing port          | 1       | the simulated relay board is unplugged         | on pump        | 1      | unplugged? |
      | a board that is silent  | 1       | board "pump" is configured as a devantech board | on pump       | 1      | no answer within 1s |
      | a usage error           | 1       | nothing else is wrong                          | flip pump      | 2      | want on, off, cycle or status |
