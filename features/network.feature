@network
Feature: The payload's Ethernet: the bench bridge, link cuts and shaping
  On a bench with a network (benches/qemu.yaml, benches/netns.yaml; they
  need root), the bus and its payloads share a bridge inside a network
  namespace made for the run, and nothing of it is on the host's own
  network. As in orbit, the bus may cut a payload's Ethernet after the
  start signal; the bench can also shape the link.

  Background:
    Given a window 3001 for user "alice" on board "refpayload" lasting 30s

  Scenario: The payload is reachable at its bench address only over the bench bridge
    Given the window's user command is "/usr/bin/sleep 1h"
    When the window reaches "started"
    Then the payload answers SSH at its bench address over the bench bridge
    And the bench network is not on the host's own network

  Scenario: A link cut after the start signal makes SSH fail, and restoring it brings it back
    Given the window's user command is "/usr/bin/sleep 1h"
    When the window reaches "started"
    And the bus cuts the payload's link
    Then SSH to the payload fails
    When the bus restores the payload's link
    Then the payload answers SSH at its bench address over the bench bridge

  Scenario: A link shaped to 1 Mbit/s slows the downlink from the payload to match
    Given the payload's link is shaped to 1Mbit/s
    And the window's user command is "/usr/bin/mkfile /outbox/shaped.bin 256KiB 5"
    And the window lasts 2s
    When the window runs to the end
    Then the window is delivered
    And "shaped.bin" lands in the bucket under the outbox layout with the bytes of mkfile 256KiB seed 5
    And the pull of "shaped.bin" from the payload ran at no more than 1Mbit/s, as measured

  Scenario: A payload that does not answer SSH within its boot timeout is reported with its console's tail
    Given the payload's boot timeout is 10s
    And the payload's link is down at power-on
    When the window runs to the end
    Then the window is aborted because "no SSH within boot_timeout 10s"
    And the reason ends with the tail of the payload's console

  # The host here has no netem: a QEMU payload gets the delay from netem
  # inside its guest (a process payload's bench would refuse the shape).
  @qemu
  Scenario: A delay on the link reaches every round trip
    Given the payload's link is shaped with a delay of 100ms
    And the window's user command is "/usr/bin/sleep 1h"
    When the window reaches "started"
    Then a command on the payload takes at least 100ms, as measured

  @qemu
  Scenario: QEMU stopping dead during a window aborts it with the reason and the console tail
    Given the window's user command is "/usr/bin/sleep 1h"
    When the window reaches "started"
    And the payload's QEMU stops dead
    Then the window is aborted because "payload power lost mid-window"
    And the reason ends with the tail of the payload's console
