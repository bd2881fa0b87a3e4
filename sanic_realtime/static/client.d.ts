// Placeholder: the browser client's types are being written (issue 6).
export declare class RealtimeClient {}
export default RealtimeClient;
