@sim @pi
Feature: The bus is the Payload Controller that the payload app talks to
  A payload app built on the SatOS Payload SDK registers with the bus's
  Payload Controller over gRPC when the payload powers on. It answers a
  health check every 5 s, runs the sequences the bus starts, stages files
  for downlink, asks where the satellite is, and is shut down at the end
  of the window. The reference payload runs such an app
  (fixtures/payload/app), which these scenarios drive through its
  sequences.

  Scenario: The app registers soon after power-on
    Given a window 2001 for user "alice" on board "refpayload" lasting 30s
    When the window reaches "started"
    Then the app registers within 5s of power-on

  Scenario: Health checks arrive every 5 s and are answered
    Given a window 2002 for user "alice" on board "refpayload" lasting 60s
    When the window reaches "started"
    Then 3 health checks in a row reach the app 5s apart, each answered

  Scenario: A silent app that asked for a reboot is power-cycled after 5 failed health checks
    Given health checks are sent every 300ms with a 300ms deadline
    And a window 2003 for user "alice" on board "refpayload" lasting 60s
    And the app asks to be rebooted when unhealthy
    When the window reaches "started"
    And the bus starts sequence "silence" on the app
    Then the app is power-cycled after 5 failed health checks in a row
    And the app registers again

  Scenario: A silent app that did not ask for a reboot is only reported
    Given health checks are sent every 300ms with a 300ms deadline
    And a window 2004 for user "alice" on board "refpayload" lasting 60s
    When the window reaches "started"
    And the bus starts sequence "silence" on the app
    Then the app is reported unhealthy after 5 failed health checks in a row, and only reported
    And the payload was not power-cycled

  Scenario: A sequence runs and reports done before its deadline
    Given a window 2005 for user "alice" on board "refpayload" lasting 30s
    When the window reaches "started"
    And the bus starts sequence "sleep" with params "200ms" on the app, due in 10s
    Then sequence "sleep" is reported done before its deadline

  Scenario: A sequence that overruns its deadline is reported
    Given a window 2006 for user "alice" on board "refpayload" lasting 30s
    When the window reaches "started"
    And the bus starts sequence "sleep" with params "3s" on the app, due in 1s
    Then sequence "sleep" is reported overrunning its deadline
    And sequence "sleep" is reported done after its deadline

  Scenario: The app refuses a sequence it does not know
    Given a window 2007 for user "alice" on board "refpayload" lasting 30s
    When the window reaches "started"
    Then starting sequence "no_such" on the app fails with "unknown sequence"

  Scenario: Shutdown is answered within the grace time
    Given a window 2008 for user "alice" on board "refpayload" lasting 3s
    When the window runs to the end
    Then the app answered the shutdown within the grace time
    And the window is delivered

  Scenario: An app that ignores shutdown is powered off after the grace time
    Given a window 2009 for user "alice" on board "refpayload" lasting 3s
    When the window reaches "started"
    And the bus starts sequence "ignore_shutdown" on the app
    And the window runs to the end
    Then the app did not answer the shutdown, and the payload was powered off after the grace time
    And the window is delivered

  Scenario: A staged file lands in S3 and is deleted from the payload
    Given a window 2010 for user "alice" on board "refpayload" lasting 30s
    When the window reaches "started"
    And the bus starts sequence "stage" with params "scan.bin 2MiB 11 2" on the app, due in 20s
    Then the staged file "scan.bin" lands in the bucket under the outbox layout with the bytes of mkfile 2MiB seed 11 within 20s
    And "/opt/antaris/outbound/scan.bin" is deleted from the payload within 10s

  @local
  Scenario Outline: A stage path leading out of the outbound directory is refused and nothing is read
    Given a window 2011 for user "alice" on board "refpayload" lasting 30s
    And the payload has a file "/etc/secret" and a link "/opt/antaris/outbound/up" to "/etc"
    When the window reaches "started"
    And the bus starts sequence "stage_path" with params "<path>" on the app, due in 10s
    Then the controller refuses to stage "<path>" because "<why>"
    And the payload served no file for staging

    Examples:
      | path                | why                                      |
      | ../../../etc/secret | segment; want a path inside              |
      | /etc/secret         | is absolute; want a path relative to     |
      | up/secret           | to /etc, outside /opt/antaris/outbound   |

  Scenario: The location is within the orbit's bounds and changes over time
    Given a window 2012 for user "alice" on board "refpayload" lasting 30s
    When the window reaches "started"
    And the app asks for its location 3 times, 1s apart
    Then every location is within the bench orbit's bounds
    And the locations change over time

  Scenario: GNSS ephemeris arrives at the requested period until stopped
    Given a window 2013 for user "alice" on board "refpayload" lasting 30s
    When the window reaches "started"
    And the bus starts sequence "gnss" with params "200 3" on the app, due in 10s
    Then sequence "gnss" is reported done before its deadline
    And the app received 3 GNSS ephemeris messages about 200ms apart, and none after the stop

  Scenario: PayloadPowerControl for an hw_id that switches nothing is answered Invalid_hw_id
    Given a window 2014 for user "alice" on board "refpayload" lasting 30s
    When the window reaches "started"
    And the bus starts sequence "power" with params "7 0" on the app, due in 10s
    Then the controller answered PayloadPowerControl with req_status 4
    And the payload is still powered on

  Scenario: The app registers over TLS
    Given the bench serves the Payload Interface over TLS
    And a window 2015 for user "alice" on board "refpayload" lasting 30s
    When the window reaches "started"
    Then the app registers within 5s of power-on
    And a health check reaches the app and is answered

  Scenario: A plaintext app is refused on a TLS bench
    Given the bench serves the Payload Interface over TLS
    And a window 2016 for user "alice" on board "refpayload" lasting 30s
    And the app dials the Payload Controller in plaintext
    When the window reaches "started"
    Then the controller refuses a connection because "plaintext connection"
    And the app has not registered

  Scenario: An app with a wrong cookie is refused
    Given a window 2017 for user "alice" on board "refpayload" lasting 30s
    And the app's cookie is "WrongKeyWrongKey0000001"
    When the window reaches "started"
    Then the controller refuses the app's calls because "is no board's payload_interface.key"
    And the app has not registered
