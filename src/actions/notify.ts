/** Where an action's messages for people go (the CLI's Io is one). */
export interface Notify {
  info(text: string): void;
  warn(text: string): void;
}
