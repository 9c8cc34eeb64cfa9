// The render socket: one websocket to the server's render consumer (viewer/consumers.py), with its connection
// state said out loud and the reconnect rule in one place. It knows the wire (JSON text, binary frames) but not
// what the messages mean: it hands them to its owner. It must not touch the DOM or any viewport.
//
// States: connecting -> open -> (closing ->) closed -> connecting … (backing off 0.5 s, 1 s, 2 s … 8 s), or ended.
// "ended" is final: the server says so with an {"type": "ended"} message and/or close code 4401 when the session,
// user or share link behind the socket is gone (viewer/socket_sessions.py); reconnecting could not help.
// Keepalive: the server sends {"type": "ping", "interval": s}; the socket answers {"type": "pong"} and does not hand
// pings to its owner. After three intervals without any message the connection is taken for dead (a proxy or
// network that dropped it without a close) and replaced, as after any drop.

export const SocketState = Object.freeze({
  CONNECTING: "connecting",
  OPEN: "open",
  CLOSING: "closing",  // we asked to close; no reconnect follows
  CLOSED: "closed",    // dropped; a reconnect is scheduled
  ENDED: "ended",      // the server ended what opened it; never reconnects
});

const CLOSE_UNAUTHORIZED = 4401;  // viewer.consumers.CLOSE_UNAUTHORIZED
const FIRST_RETRY_MS = 500;
const LONGEST_RETRY_MS = 8000;
const ENDED_TEXT = "Your session has ended. Reload the page to sign in again.";
const SILENT_INTERVALS = 3;  // pings missed before the connection is taken for dead
const CLOSE_SILENT = 4000;   // our own code for a connection replaced after silence

export class RenderSocket {
  /**
   * @param {object} options
   * @param {string} options.url           ws:// or wss:// URL of the render consumer
   * @param {() => void} options.onOpen    each time a connection opens (send the "open" message here)
   * @param {(message: object) => void} options.onText    every JSON text message, "ended" included
   * @param {(buffer: ArrayBuffer) => void} options.onBinary   every binary message (a rendered frame)
   * @param {(text: string) => void} options.onStatus     a line for the user ("" clears it)
   */
  constructor({ url, onOpen, onText, onBinary, onStatus }) {
    this.url = url;
    this.onOpen = onOpen;
    this.onText = onText;
    this.onBinary = onBinary;
    this.onStatus = onStatus;
    this.state = SocketState.CLOSED;
    this.ws = null;
    this.retryMs = FIRST_RETRY_MS;
    this.retryTimer = null;
    this.endedMessage = null;
    this.silenceTimer = null;
    this.pingMs = null;
  }

  get isOpen() {
    return this.state === SocketState.OPEN && this.ws !== null && this.ws.readyState === WebSocket.OPEN;
  }

  connect() {
    if (this.state === SocketState.ENDED) return;
    this.retryTimer = null;
    this.state = SocketState.CONNECTING;
    const ws = new WebSocket(this.url);
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    ws.onopen = () => {
      if (ws !== this.ws) return;
      this.state = SocketState.OPEN;
      this.retryMs = FIRST_RETRY_MS;
      this.#heard();
      this.onStatus("");
      this.onOpen();
    };
    ws.onmessage = (event) => {
      if (ws !== this.ws) return;
      if (typeof event.data !== "string") {
        this.#heard();
        this.onBinary(event.data);
        return;
      }
      const message = JSON.parse(event.data);
      this.#heard(message.type === "ping" ? message.interval : null);
      if (message.type === "ping") {
        this.send({ type: "pong" });
        return;
      }
      if (message.type === "ended") {
        this.state = SocketState.ENDED;
        this.endedMessage = message.message;
        this.onStatus(message.message);
      }
      this.onText(message);
    };
    ws.onclose = (event) => {
      if (ws !== this.ws) return;
      this.#onClose(event.code);
    };
  }

  /** Send one JSON message; false (and nothing sent) unless the socket is open. */
  send(message) {
    if (!this.isOpen) return false;
    this.ws.send(JSON.stringify(message));
    return true;
  }

  /** Close on purpose: no reconnect follows. */
  close() {
    this.#stopSilenceTimer();
    if (this.retryTimer !== null) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    if (this.state === SocketState.ENDED) return;
    this.state = SocketState.CLOSING;
    if (this.ws) this.ws.close();
  }

  /** Anything from the server proves the connection alive; a ping also says how often to expect one. */
  #heard(pingSeconds = null) {
    if (pingSeconds) this.pingMs = pingSeconds * 1000;
    if (!this.pingMs) return;
    this.#stopSilenceTimer();
    const ws = this.ws;
    this.silenceTimer = setTimeout(() => {
      if (ws !== this.ws || this.state !== SocketState.OPEN) return;
      this.ws = null;  // its late events are ignored from here on
      ws.close(CLOSE_SILENT);
      this.#onClose(CLOSE_SILENT);
    }, this.pingMs * SILENT_INTERVALS);
  }

  #stopSilenceTimer() {
    if (this.silenceTimer !== null) clearTimeout(this.silenceTimer);
    this.silenceTimer = null;
  }

  #onClose(code) {
    this.#stopSilenceTimer();
    if (this.state === SocketState.ENDED || code === CLOSE_UNAUTHORIZED) {
      this.state = SocketState.ENDED;
      if (!this.endedMessage) this.onStatus(ENDED_TEXT);
      return;
    }
    if (this.state === SocketState.CLOSING) {
      this.state = SocketState.CLOSED;
      return;
    }
    this.state = SocketState.CLOSED;
    this.onStatus("Reconnecting…");
    this.retryTimer = setTimeout(() => this.connect(), this.retryMs);
    this.retryMs = Math.min(this.retryMs * 2, LONGEST_RETRY_MS);
  }
}
