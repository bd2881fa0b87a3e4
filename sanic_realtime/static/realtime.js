// Placeholder: the browser client is being written (issue 6).
export class RealtimeClient {}
export default RealtimeClient;
