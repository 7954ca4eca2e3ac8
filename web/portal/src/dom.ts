// Small DOM helpers. Everything the services return is put on the page as text
// (textContent), never as markup, so a message body can never become script.

export type Child = Node | string | number | null | undefined | false;
type Prop = string | number | boolean | ((ev: Event) => void) | undefined;

/** h builds an element: props starting with "on" are listeners, booleans toggle attributes. */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  props: Record<string, Prop> = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === false) continue;
    if (typeof value === "function") {
      el.addEventListener(key.slice(2).toLowerCase(), value);
    } else if (value === true) {
      el.setAttribute(key, "");
    } else {
      el.setAttribute(key, String(value));
    }
  }
  append(el, ...children);
  return el;
}

/** append adds children as nodes or text. */
export function append(el: Node, ...children: Child[]): void {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    el.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** replace swaps an element's children. */
export function replace(el: Element, ...children: Child[]): void {
  el.replaceChildren();
  append(el, ...children);
}

let fieldSeq = 0;

/** field is a labelled form control: the label names the control for assistive technology. */
export function field(label: string, control: HTMLInputElement | HTMLSelectElement | HTMLTextAreaElement, hint?: string): HTMLElement {
  const id = control.id || `f${++fieldSeq}`;
  control.id = id;
  const wrap = h("div", { class: "field" }, h("label", { for: id }, label));
  if (hint) {
    const hintId = `${id}-hint`;
    control.setAttribute("aria-describedby", hintId);
    append(wrap, h("p", { class: "hint", id: hintId }, hint));
  }
  append(wrap, control);
  return wrap;
}

/** option builds a select option. */
export function option(value: string, label: string, selected = false): HTMLOptionElement {
  return h("option", { value, selected }, label);
}

/** formatTime renders a timestamp in the reader's locale. */
export function formatTime(t?: { seconds: bigint; nanos: number }): string {
  if (!t) return "";
  return new Date(Number(t.seconds) * 1000 + Math.floor(t.nanos / 1e6)).toLocaleString();
}

/** formatDuration renders a protobuf Duration as hours or minutes. */
export function formatDuration(d?: { seconds: bigint }): string {
  if (!d) return "";
  const s = Number(d.seconds);
  if (s >= 86400 && s % 86400 === 0) return `${s / 86400} day${s === 86400 ? "" : "s"}`;
  if (s >= 3600) return `${Math.round(s / 360) / 10} hours`;
  return `${Math.max(1, Math.round(s / 60))} minutes`;
}

/** enumLabel names a generated enum's value for people: ThreadStatus.OPEN becomes "open". */
export function enumLabel(names: Record<number, string>, value: number): string {
  return (names[value] ?? "").toLowerCase().replaceAll("_", " ") || "unknown";
}

/**
 * keepFocus runs a re-render of container and gives focus back to the control that had it, found
 * again by its data-key, so a live update never drops a keyboard user's place.
 */
export function keepFocus(container: Element, rerender: () => void): void {
  const active = document.activeElement;
  const key = active instanceof HTMLElement && container.contains(active) ? active.dataset.key : undefined;
  rerender();
  if (key) container.querySelector<HTMLElement>(`[data-key="${CSS.escape(key)}"]`)?.focus();
}

/** focusHeading moves focus to a view's heading, so keyboard and screen-reader users land on it. */
export function focusHeading(root: Element): void {
  const heading = root.querySelector("h1, h2");
  if (heading instanceof HTMLElement) {
    heading.tabIndex = -1;
    heading.focus();
  }
}
