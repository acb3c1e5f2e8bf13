@sim @s3
Feature: Downlink: every file a payload queues lands in S3 whole, exactly once
  Files leave the payload by the /outbox sweep and through the OORT agent
  (and, with the Payload Interface, StageFileDownload). All of them go
  through one journaled queue on the bus, across a modelled space link,
  and land in S3 under the documented key layout with their metadata,
  byte for byte, exactly once. The queue retries S3 until it answers; a
  transfer cut by the end of a contact resumes at the next one.
  Windows in which steps write files last long enough for a QEMU payload,
  whose SFTP runs under emulation.

  Scenario: Outbox and OORT files land under their keys, topics routed to their buckets
    Given a window 2001 for user "alice" on board "refpayload" lasting 8s
    When the payload writes "report.txt" of 10KiB to "/outbox"
    And the payload sends "hk.bin" of 2MiB on topic "logs" through the OORT agent
    And the payload sends "frame-001.raw" of 1MiB on topic "images" through the OORT agent
    Then the file "report.txt" lands in bucket "hil-downlink" under "customer/a" within 30s
    And "hk.bin" lands in bucket "hil-downlink" under "customer/a/oort/logs" within 30s
    And "frame-001.raw" lands in bucket "hil-images" under "customer/a/images" within 30s
    And the window is delivered
    And no other object appears in bucket "hil-downlink"
    And no other object appears in bucket "hil-images"

  @slow
  Scenario: The S3 endpoint goes down for 30 s during a drain: retried, nothing lost, nothing twice
    Given a window 2002 for user "alice" on board "refpayload" lasting 3s
    And the space link runs at 16Mbit/s
    When the payload writes 20 files of 256KiB to "/outbox"
    And the window reaches "downlinking"
    And the S3 endpoint goes down for 30s
    Then all 20 files land in bucket "hil-downlink" under "customer/a" within 2m
    And the downlink retried while the S3 endpoint was down
    And no other object appears in bucket "hil-downlink"

  Scenario: A contact ending mid-file: the transfer resumes at the next contact and lands whole
    Given a window 2003 for user "alice" on board "refpayload" lasting 6s
    And the space link has contacts of 1s every 2s at 4Mbit/s
    When the payload writes "pass.bin" of 1MiB to "/outbox"
    Then "pass.bin" lands in bucket "hil-downlink" under "customer/a" within 1m
    And the transfer of "pass.bin" was cut by the end of a contact and resumed
    And no other object appears in bucket "hil-downlink"

  @local
  Scenario: A corrupted pair on the payload is reported, kept there and never delivered
    Given a window 2004 for user "alice" on board "refpayload" lasting 3s
    When the payload sends "good.bin" of 100KiB on topic "logs" through the OORT agent
    And the payload sends "bad.bin" of 100KiB on topic "logs" through the OORT agent
    And the OORT pair of "bad.bin" is corrupted on the payload
    Then "good.bin" lands in bucket "hil-downlink" under "customer/a/oort/logs" within 30s
    And the window is aborted because "oort"
    And the OORT pair of "bad.bin" is reported as not matching its meta, kept on the payload and not delivered
    And no other object appears in bucket "hil-downlink"

  @bulk
  Scenario: A thousand small files
    Given a window 2005 for user "alice" on board "refpayload" lasting 8s
    When the payload writes 1000 files of 1KiB to "/outbox"
    Then all 1000 files land in bucket "hil-downlink" under "customer/a" within 2m
    And no other object appears in bucket "hil-downlink"

  @slow
  Scenario: One 1 GiB file
    Given a window 2006 for user "alice" on board "refpayload" lasting 20s
    And the window's user command writes "huge.bin" of 1GiB to "/outbox"
    Then "huge.bin" lands in bucket "hil-downlink" under "customer/a" within 5m
    And no other object appears in bucket "hil-downlink"

  Scenario Outline: A hostile file name stays inside the key prefix
    Given a window 2007 for user "alice" on board "refpayload" lasting 5s
    When the payload writes "<name>" of 1KiB to "/outbox"
    Then "<name>" lands in bucket "hil-downlink" under "customer/a" within 30s
    And no other object appears in bucket "hil-downlink"

    # Names use Go escapes. "../x" and names over 255 bytes cannot be file
    # names on Linux; harness/downlink's key tests and fuzzer cover them.
    Examples:
      | name               |
      | line\nbreak        |
      | bad\xff\xfeutf8    |
      | ..%2F..%2Fescape   |
      | ...                |
      | \x1b[31mred        |
      | tab\there.txt      |

  Scenario: A 255-byte file name, the longest Linux allows, stays inside the key prefix
    Given a window 2008 for user "alice" on board "refpayload" lasting 5s
    When the payload writes a file with a 255-byte name to "/outbox"
    Then the file with the 255-byte name lands in bucket "hil-downlink" under "customer/a" within 30s
    And no other object appears in bucket "hil-downlink"

  Scenario: A slow S3 endpoint and a slow link still deliver every byte once
    Given a window 2009 for user "alice" on board "refpayload" lasting 8s
    And the space link runs at 16Mbit/s
    When the S3 endpoint is slowed to 1MiB per second
    And the payload writes "slow.bin" of 3MiB to "/outbox"
    Then "slow.bin" lands in bucket "hil-downlink" under "customer/a" within 1m
    And no other object appears in bucket "hil-downlink"

  Scenario: Nothing crosses a cut link; the queue drains when it is back
    Given a window 2010 for user "alice" on board "refpayload" lasting 5s
    When the space link goes down
    And the payload writes "held.bin" of 64KiB to "/outbox"
    And the window reaches "downlinking"
    Then "held.bin" has not crossed the space link
    When the space link comes back
    Then "held.bin" lands in bucket "hil-downlink" under "customer/a" within 30s
    And the window is delivered
