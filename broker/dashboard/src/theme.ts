/**
 * Light and dark themes: the system preference by default (prefers-color-scheme),
 * overridden by the toggle and remembered in localStorage. The choice is a
 * `data-theme` attribute on <html>; the CSS holds both palettes.
 */

export type ThemeChoice = 'system' | 'light' | 'dark';
const KEY = 'topicast.theme';
const ORDER: readonly ThemeChoice[] = ['system', 'light', 'dark'];

function stored(): ThemeChoice {
  try {
    const v = localStorage.getItem(KEY);
    return v === 'light' || v === 'dark' ? v : 'system';
  } catch {
    return 'system'; // storage disabled (privacy mode): follow the system
  }
}

/** Wires the toggle button; `onChange` runs whenever the effective palette may have changed. */
export function initTheme(button: HTMLButtonElement, onChange: () => void): void {
  let choice = stored();
  const media = matchMedia('(prefers-color-scheme: dark)');
  const apply = (): void => {
    const effective = choice === 'system' ? (media.matches ? 'dark' : 'light') : choice;
    document.documentElement.dataset.theme = effective;
    button.textContent = choice === 'system' ? `Theme: auto (${effective})` : `Theme: ${choice}`;
    button.setAttribute('aria-label', `Colour theme: ${choice === 'system' ? `follow system, now ${effective}` : choice}. Activate to change.`);
    onChange();
  };
  button.addEventListener('click', () => {
    choice = ORDER[(ORDER.indexOf(choice) + 1) % ORDER.length]!;
    try {
      if (choice === 'system') localStorage.removeItem(KEY);
      else localStorage.setItem(KEY, choice);
    } catch {
      // storage disabled: the choice lasts for this page only
    }
    apply();
  });
  media.addEventListener('change', () => {
    if (choice === 'system') apply();
  });
  apply();
}
