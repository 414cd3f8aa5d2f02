/**
 * MQTT reason and return codes used by the listener (MQTT 5 §2.4, MQTT 3.1.1 §3.2.2.3).
 * One table so handlers name codes instead of repeating numbers.
 */

/** MQTT 5 reason codes (a subset: the ones this listener sends). */
export const Reason = {
  success: 0x00,
  grantedQos1: 0x01,
  grantedQos2: 0x02,
  disconnectWithWill: 0x04,
  noSubscriptionExisted: 0x11,
  unspecifiedError: 0x80,
  malformedPacket: 0x81,
  protocolError: 0x82,
  implementationSpecificError: 0x83,
  unsupportedProtocolVersion: 0x84,
  clientIdentifierNotValid: 0x85,
  badUserNameOrPassword: 0x86,
  notAuthorized: 0x87,
  serverUnavailable: 0x88,
  serverBusy: 0x89,
  badAuthenticationMethod: 0x8c,
  keepAliveTimeout: 0x8d,
  sessionTakenOver: 0x8e,
  topicFilterInvalid: 0x8f,
  topicNameInvalid: 0x90,
  packetIdentifierNotFound: 0x92,
  receiveMaximumExceeded: 0x93,
  topicAliasInvalid: 0x94,
  packetTooLarge: 0x95,
  messageRateTooHigh: 0x96,
  quotaExceeded: 0x97,
  payloadFormatInvalid: 0x99,
  serverShuttingDown: 0x8b,
  useAnotherServer: 0x9c,
  sharedSubscriptionsNotSupported: 0x9e,
  connectionRateExceeded: 0x9f,
} as const;
export type Reason = (typeof Reason)[keyof typeof Reason];

/** MQTT 3.1.1 CONNACK return codes [MQTT-3.2.2-4..5]. */
export const ReturnCode = {
  accepted: 0,
  unacceptableProtocolVersion: 1,
  identifierRejected: 2,
  serverUnavailable: 3,
  badUserNameOrPassword: 4,
  notAuthorized: 5,
} as const;
export type ReturnCode = (typeof ReturnCode)[keyof typeof ReturnCode];

/** SUBACK failure in 3.1.1 [MQTT-3.9.3-2]. */
export const SUBACK_FAILURE_V4 = 0x80;

/** Maps an MQTT 5 CONNACK reason to the closest 3.1.1 return code. */
export function returnCodeFor(reason: number): ReturnCode {
  switch (reason) {
    case Reason.unsupportedProtocolVersion: return ReturnCode.unacceptableProtocolVersion;
    case Reason.clientIdentifierNotValid: return ReturnCode.identifierRejected;
    case Reason.badUserNameOrPassword: return ReturnCode.badUserNameOrPassword;
    case Reason.notAuthorized: return ReturnCode.notAuthorized;
    default: return ReturnCode.serverUnavailable;
  }
}
