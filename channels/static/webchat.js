// The web chat page: one WebSocket to the gateway, reconnecting by itself; every text is rendered as text.
"use strict";

(() => {
  const USER_KEY = "gateway.webchat.user";
  const MAX_TEXT_BYTES = 4096; // the gateway refuses longer messages (UTF-8 bytes)
  const FIRST_DELAY = 500; // ms before the first reconnection attempt, doubled up to MAX_DELAY
  const MAX_DELAY = 10000;
  const RESEND_DELAY = 2000; // after the gateway said it is busy

  const log = document.getElementById("log");
  const status = document.getElementById("status");
  const notice = document.getElementById("notice");
  const composer = document.getElementById("composer");
  const input = document.getElementById("text");
  const encoder = new TextEncoder();

  // Client message ids: unique per page load and message, the same when a message is sent again.
  const pageId = randomHex(8);
  let counter = 0;
  const outbox = new Map(); // id -> {frame, item}: sent, not yet acknowledged
  let socket = null;
  let ready = false;
  let delay = FIRST_DELAY;

  function randomHex(bytes) {
    const values = new Uint8Array(bytes);
    crypto.getRandomValues(values);
    return Array.from(values, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  function storedUser() {
    try {
      return localStorage.getItem(USER_KEY);
    } catch {
      return null; // storage disabled: a new user each time
    }
  }

  function storeUser(user) {
    try {
      localStorage.setItem(USER_KEY, user);
    } catch {
      // nothing to do: the user is kept for this page only
    }
  }

  function socketUrl() {
    const url = new URL("webchat/socket", location.href);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    const user = storedUser();
    if (user) url.searchParams.set("user", user);
    return url.href;
  }

  function setStatus(state, text) {
    status.dataset.state = state;
    status.textContent = text;
  }

  function showNotice(text) {
    notice.textContent = text;
    notice.hidden = !text;
  }

  // -- the connection ------------------------------------------------------------------------------

  function connect() {
    setStatus("connecting", "connecting…");
    const ws = new WebSocket(socketUrl());
    socket = ws;
    ws.addEventListener("message", (event) => {
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        return;
      }
      receive(frame);
    });
    ws.addEventListener("close", () => {
      if (socket !== ws) return;
      socket = null;
      ready = false;
      const wait = delay / 2 + Math.random() * (delay / 2);
      delay = Math.min(delay * 2, MAX_DELAY);
      setStatus("offline", `offline — reconnecting in ${Math.max(1, Math.round(wait / 1000))} s`);
      setTimeout(connect, wait);
    });
  }

  function transmit(frame) {
    if (ready && socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(frame));
  }

  function receive(frame) {
    switch (frame.type) {
      case "ready":
        storeUser(frame.user);
        ready = true;
        delay = FIRST_DELAY;
        setStatus("online", "online");
        showNotice("");
        for (const { frame: pending } of outbox.values()) transmit(pending);
        break;
      case "ack": {
        const entry = outbox.get(frame.id);
        if (entry) {
          outbox.delete(frame.id);
          entry.item.classList.remove("pending");
        }
        break;
      }
      case "reply":
        addReply(frame);
        break;
      case "error":
        refused(frame);
        break;
      default:
        break;
    }
  }

  function refused(frame) {
    const entry = frame.id ? outbox.get(frame.id) : undefined;
    if (entry && frame.code === "unavailable") {
      setTimeout(() => transmit(entry.frame), RESEND_DELAY);
      return;
    }
    const reason = String(frame.message || frame.code || "refused");
    if (!entry) {
      showNotice(reason);
      return;
    }
    outbox.delete(frame.id);
    entry.item.classList.remove("pending");
    entry.item.classList.add("failed");
    const why = document.createElement("span");
    why.className = "failed-reason";
    why.textContent = `not sent: ${reason}`;
    entry.item.append(why);
  }

  // -- what the user sends -------------------------------------------------------------------------

  function send(frame, shown) {
    frame.id = `${pageId}-${++counter}`;
    const item = addMessage("user", shown);
    item.classList.add("pending");
    outbox.set(frame.id, { frame, item });
    transmit(frame);
  }

  function sendText() {
    const text = input.value;
    if (!text.trim()) return;
    if (encoder.encode(text).length > MAX_TEXT_BYTES) {
      showNotice(`That message is too long (at most ${MAX_TEXT_BYTES} bytes).`);
      return;
    }
    showNotice("");
    input.value = "";
    send({ type: "message", text }, text);
  }

  function press(button) {
    send({ type: "button", payload: button.payload, title: button.title }, button.title);
  }

  composer.addEventListener("submit", (event) => {
    event.preventDefault();
    sendText();
  });
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      sendText();
    }
  });
  document.getElementById("restart").addEventListener("click", () => {
    try {
      localStorage.removeItem(USER_KEY);
    } catch {
      // nothing stored
    }
    location.reload();
  });

  // -- rendering: text as text, never as HTML ------------------------------------------------------

  function addMessage(who, text) {
    const item = document.createElement("li");
    item.className = `message ${who}`;
    if (text) {
      const bubble = document.createElement("p");
      bubble.className = "bubble";
      bubble.textContent = text;
      item.append(bubble);
    }
    log.append(item);
    item.scrollIntoView({ block: "end" });
    return item;
  }

  function safeImageUrl(url) {
    const text = String(url);
    if (/^data:image\/[a-z0-9.+-]+(;[^,]*)?;base64,/i.test(text)) return text; // a person's image, inline
    try {
      const parsed = new URL(text, location.href);
      return parsed.protocol === "http:" || parsed.protocol === "https:" ? parsed.href : null;
    } catch {
      return null;
    }
  }

  // A person's answer from a support desk: shown like the bot's, under a small label with their name.
  function addAuthor(item, author) {
    const label = document.createElement("span");
    label.className = "author";
    label.textContent = String(author) || "Support";
    item.classList.add("staff");
    item.prepend(label);
  }

  function addReply(frame) {
    const item = addMessage("bot", frame.text ? String(frame.text) : "");
    if (frame.author !== undefined && frame.author !== null) addAuthor(item, frame.author);
    const image = frame.image && safeImageUrl(frame.image.url);
    if (image) {
      const figure = document.createElement("figure");
      figure.className = "picture";
      const img = document.createElement("img");
      img.src = image;
      img.alt = frame.image.caption ? String(frame.image.caption) : "";
      img.addEventListener("load", () => item.scrollIntoView({ block: "end" }));
      figure.append(img);
      if (frame.image.caption) {
        const caption = document.createElement("figcaption");
        caption.textContent = String(frame.image.caption);
        figure.append(caption);
      }
      item.append(figure);
    }
    if (Array.isArray(frame.buttons) && frame.buttons.length) {
      const row = document.createElement("div");
      row.className = "buttons";
      for (const spec of frame.buttons) {
        const button = document.createElement("button");
        button.type = "button";
        button.textContent = String(spec.title);
        const pressed = { title: String(spec.title), payload: String(spec.payload) };
        button.addEventListener("click", () => press(pressed));
        row.append(button);
      }
      item.append(row);
    }
    item.scrollIntoView({ block: "end" });
  }

  connect();
})();
